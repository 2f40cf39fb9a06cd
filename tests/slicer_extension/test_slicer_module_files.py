"""Static checks of the Slicer extension that need no Slicer: CMake lists, .ui, module source."""

from __future__ import annotations

import ast
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

REPO_DIR = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_DIR / "VMGGARegistration"
MODULE_PY = MODULE_DIR / "VMGGARegistration.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "VMGGARegistration.ui"

#: Widget classes that a user interacts with: each must be used by the code or bound to a parameter.
INTERACTIVE = {
    "QPushButton",
    "QCheckBox",
    "QComboBox",
    "qMRMLNodeComboBox",
    "ctkSliderWidget",
    "QProgressBar",
    "QPlainTextEdit",
}


# --- CMake ------------------------------------------------------------------------------------


def _cmake_list(text: str, variable: str) -> list[str]:
    """Items of ``set(VARIABLE ...)`` with ``${MODULE_NAME}`` expanded."""
    module_name = re.search(r"set\(MODULE_NAME\s+(\S+)\)", text).group(1)
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.DOTALL).group(1)
    return [item.replace("${MODULE_NAME}", module_name) for item in body.split()]


def _module_cmake() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text()


def test_every_listed_script_and_resource_exists():
    text = _module_cmake()
    listed = _cmake_list(text, "MODULE_PYTHON_SCRIPTS") + _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert listed
    missing = [item for item in listed if not (MODULE_DIR / item).is_file()]
    assert missing == []


def test_every_module_python_file_is_listed():
    scripts = set(_cmake_list(_module_cmake(), "MODULE_PYTHON_SCRIPTS"))
    python_files = [p for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts]
    on_disk = {str(p.relative_to(MODULE_DIR)) for p in python_files}
    assert on_disk - scripts == set()
    assert all(s.endswith(".py") for s in scripts)


def test_every_resource_file_is_listed():
    resources = set(_cmake_list(_module_cmake(), "MODULE_PYTHON_RESOURCES"))
    files = [p for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()]
    # Resources/wheels/ is a build output (the core's wheel, see CoreWheel.cmake), not a source resource
    on_disk = {
        str(p.relative_to(MODULE_DIR)) for p in files if "wheels" not in p.relative_to(MODULE_DIR).parts
    }
    assert on_disk == resources
    assert {"Resources/UI/VMGGARegistration.ui", "Resources/Icons/VMGGARegistration.png",
            "Resources/requirements.txt"} <= resources  # fmt: skip


def test_module_is_built_as_a_scripted_module_with_generic_tests():
    text = _module_cmake()
    macro = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", text, re.DOTALL).group(1).split()
    assert macro[:2] == ["NAME", "${MODULE_NAME}"]
    assert {"SCRIPTS", "${MODULE_PYTHON_SCRIPTS}", "RESOURCES", "${MODULE_PYTHON_RESOURCES}"} <= set(macro)
    assert "WITH_GENERIC_TESTS" in macro
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def _extension_variable(text: str, name: str) -> str:
    return re.search(rf'set\({name}\s+"([^"]*)"\)', text).group(1)


def test_extension_metadata_and_build_steps():
    text = (REPO_DIR / "CMakeLists.txt").read_text()
    assert _extension_variable(text, "EXTENSION_CATEGORY") == "Registration"
    assert _extension_variable(text, "EXTENSION_DEPENDS") == "PyTorch"
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION"):
        assert _extension_variable(text, name), name
    icon_url = _extension_variable(text, "EXTENSION_ICONURL")
    assert icon_url.endswith("VMGGARegistration/Resources/Icons/VMGGARegistration.png")
    assert "EXTENSION_SCREENSHOTURLS" in text
    steps = [
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(VMGGARegistration)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)


def test_icon_is_a_square_png():
    with Image.open(MODULE_DIR / "Resources" / "Icons" / "VMGGARegistration.png") as icon:
        assert icon.format == "PNG"
        assert icon.size[0] == icon.size[1] >= 64


# --- .ui vs. widget code ----------------------------------------------------------------------


def _ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _widget_property(widget: ET.Element, name: str) -> ET.Element | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _parameter_names_in_ui() -> dict[str, ET.Element]:
    bound = {}
    for widget in _ui_widgets().values():
        prop = _widget_property(widget, "SlicerParameterName")
        if prop is not None:
            bound[prop.findtext("string")] = widget
    return bound


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_PY.read_text())


def _ui_names_used_in_code() -> set[str]:
    """Every ``self.ui.<name>`` in the module source."""
    names = set()
    for node in ast.walk(_module_tree()):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            names.add(node.attr)
    return names


def _class(name: str) -> ast.ClassDef:
    return next(n for n in ast.walk(_module_tree()) if isinstance(n, ast.ClassDef) and n.name == name)


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the parameter node class."""
    node = _class("VMGGARegistrationParameterNode")
    return {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}


def test_ui_is_valid_xml_with_unique_widget_names():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui"
    assert root.find("class").text == "VMGGARegistration"
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))


def test_every_ui_name_used_by_the_code_exists():
    used = _ui_names_used_in_code()
    assert {"applyButton", "cancelButton", "progressBar", "logTextEdit"} <= used
    assert used - set(_ui_widgets()) == set()


def test_every_interactive_widget_is_used_or_bound():
    used_or_bound = _ui_names_used_in_code() | {w.get("name") for w in _parameter_names_in_ui().values()}
    unused = {
        name
        for name, widget in _ui_widgets().items()
        if widget.get("class") in INTERACTIVE and name not in used_or_bound
    }
    assert unused == set()


def test_required_gui_elements_exist():
    classes = {name: w.get("class") for name, w in _ui_widgets().items()}
    bound = _parameter_names_in_ui()
    for parameter in ("fixedVolume", "movingVolume", "initialTransform", "outputTransform", "outputVolume"):
        assert bound[parameter].get("class") == "qMRMLNodeComboBox", parameter
    for parameter in ("preset", "matcher", "fixedModality", "movingModality", "device"):
        assert bound[parameter].get("class") == "QComboBox", parameter
    assert classes["applyButton"] == classes["cancelButton"] == "QPushButton"
    assert classes["progressBar"] == "QProgressBar"
    assert classes["opacitySliderWidget"] == "ctkSliderWidget"


#: What the code may do with a widget of each class used in the .ui: the Qt/CTK/MRML signals it
#: connects to and the properties and methods it uses (from the classes' Qt/CTK documentation).
_SHOW = {"enabled", "toolTip", "show", "hide", "visible"}
CLASS_API = {
    "QPushButton": {"clicked(bool)", "toggled(bool)", "text", "checked", "checkable"} | _SHOW,
    "QCheckBox": {"clicked(bool)", "toggled(bool)", "text", "checked"} | _SHOW,
    "QComboBox": {"currentIndexChanged(int)", "currentTextChanged(QString)", "currentText", "currentIndex"}
    | _SHOW,
    "QProgressBar": {"value", "valueChanged(int)"} | _SHOW,
    "QLabel": {"text"} | _SHOW,
    "QPlainTextEdit": {"appendPlainText", "clear", "plainText", "textChanged()"} | _SHOW,
    "ctkSliderWidget": {"value", "valueChanged(double)"} | _SHOW,
    "qMRMLNodeComboBox": {"currentNode", "currentNodeChanged(vtkMRMLNode*)", "setMRMLScene"} | _SHOW,
}


def _ui_widget_name(node: ast.AST) -> str | None:
    """``<name>`` if ``node`` is ``self.ui.<name>``."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    ):
        return node.attr
    return None


def _ui_uses_in_code() -> dict[str, set[str]]:
    """``self.ui.<name>`` -> what the code uses on it: connected signals and attribute names."""
    uses: dict[str, set[str]] = {}
    for node in ast.walk(_module_tree()):
        name = _ui_widget_name(node.value) if isinstance(node, ast.Attribute) else None
        if name and node.attr != "connect":
            uses.setdefault(name, set()).add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "connect"
        ):
            name = _ui_widget_name(node.func.value)
            if name and node.args and isinstance(node.args[0], ast.Constant):
                uses.setdefault(name, set()).add(node.args[0].value)
    return uses


def test_every_widget_the_code_uses_has_the_expected_class():
    """Each ``self.ui.<name>`` exists in the .ui, with a class offering the signals and
    properties the code uses on it (a QLabel cannot be clicked, a QPushButton has no currentText)."""
    classes = {name: w.get("class") for name, w in _ui_widgets().items()}
    uses = _ui_uses_in_code()
    assert {"applyButton", "deformationComboBox", "logTextEdit"} <= set(uses)
    for name, used in uses.items():
        assert name in classes, f"{name} is not in the .ui"
        assert classes[name] in CLASS_API, f"{name}: no API listed for {classes[name]}"
        assert used <= CLASS_API[classes[name]], (
            f"{name} ({classes[name]}) lacks {used - CLASS_API[classes[name]]}"
        )


def test_toggled_buttons_are_checkable():
    """``toggled(bool)`` never fires on a push button that is not checkable."""
    for name, used in _ui_uses_in_code().items():
        widget = _ui_widgets()[name]
        if "toggled(bool)" in used and widget.get("class") == "QPushButton":
            checkable = _widget_property(widget, "checkable")
            assert checkable is not None and checkable.findtext("bool") == "true", name


def test_widgets_named_by_the_panel_logic_exist():
    """The panel's enabled states are applied by name (``getattr(self.ui, name)``)."""
    from VMGGARegistrationLib.panel import PanelInputs, widget_states

    states = widget_states(PanelInputs(True, True, False, False, True, True, True))
    widgets = _ui_widgets()
    for name in states.enabled:
        assert name in widgets, name
        assert "enabled" in CLASS_API[widgets[name].get("class")], name


def test_volume_selectors_show_exactly_the_auto_selected_classes():
    """Auto-selection must not pick what the fixed/moving selectors do not offer."""
    from VMGGARegistrationLib.panel import VOLUME_SELECTOR_CLASSES

    bound = _parameter_names_in_ui()
    for parameter in ("fixedVolume", "movingVolume"):
        widget = bound[parameter]
        node_types = tuple(s.text for s in _widget_property(widget, "nodeTypes").iter("string"))
        assert node_types == VOLUME_SELECTOR_CLASSES, parameter
        assert _widget_property(widget, "showChildNodeTypes").findtext("bool") == "false", parameter


def test_deformation_choices_match_the_logic():
    widget = _ui_widgets()["deformationComboBox"]
    items = [item.find("property").findtext("string") for item in widget.findall("item")]
    tree = _module_tree()
    modes = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "DEFORMATION_MODES"
    )
    assert items == ["None", *[key.value for key in modes.keys]]


def test_bound_slider_range_matches_the_parameter_range():
    widget = _parameter_names_in_ui()["foregroundOpacity"]
    annotation = ast.parse(_parameter_fields()["foregroundOpacity"]).body[0].value
    low, high = (ast.literal_eval(a) for a in annotation.slice.elts[1].args)
    ui_range = [float(_widget_property(widget, key).findtext("double")) for key in ("minimum", "maximum")]
    assert ui_range == [low, high]


def test_bound_node_selectors_are_in_the_scene_and_output_selectors_allow_none():
    """connectGui binds these; inputs must be chosen (noneEnabled false), optional ones may be empty."""
    bound = _parameter_names_in_ui()
    for parameter in ("fixedVolume", "movingVolume"):
        assert _widget_property(bound[parameter], "noneEnabled").findtext("bool") == "false", parameter
    for parameter in ("initialTransform", "outputTransform", "outputVolume"):
        assert _widget_property(bound[parameter], "noneEnabled").findtext("bool") == "true", parameter


def test_output_selectors_can_create_new_nodes():
    bound = _parameter_names_in_ui()
    for parameter in ("outputTransform", "outputVolume"):
        add = _widget_property(bound[parameter], "addEnabled")
        assert add is not None and add.findtext("bool") == "true", parameter


def test_bound_widgets_match_parameter_types():
    """Each SlicerParameterName names a parameter whose type that widget class can represent."""
    fields = _parameter_fields()
    for parameter, widget in _parameter_names_in_ui().items():
        assert parameter in fields, f"{parameter} is not a field of the parameter node"
        annotation, cls = fields[parameter], widget.get("class")
        if cls == "qMRMLNodeComboBox":
            node_types = [s.text for s in _widget_property(widget, "nodeTypes").iter("string")]
            assert node_types == [annotation], parameter
        elif cls == "QComboBox":
            assert annotation.startswith("Annotated[str, Choice("), parameter
        elif cls == "QCheckBox":
            assert annotation == "bool", parameter
        elif cls == "ctkSliderWidget":
            assert annotation.startswith("Annotated[float, WithinRange("), parameter
        else:
            pytest.fail(f"no parameter connector for {cls} ({parameter})")


def test_every_gui_parameter_has_a_widget():
    set_by_logic = {"confidenceVolume"}
    assert set(_parameter_fields()) - set(_parameter_names_in_ui()) == set_by_logic


def test_custom_widgets_and_scene_connections_are_declared():
    root = ET.parse(UI_FILE).getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared
    receivers = {c.findtext("receiver") for c in root.iter("connection")}
    selectors = {n for n, w in _ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    assert receivers == selectors


# --- module source ----------------------------------------------------------------------------


def test_module_keeps_runtime_annotations():
    """parameterNodeWrapper reads the parameter class's annotations at run time: no postponed ones."""
    future = [n for n in _module_tree().body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert future == []


def test_module_and_helpers_compile():
    for path in [MODULE_PY, *sorted((MODULE_DIR / "VMGGARegistrationLib").glob("*.py"))]:
        py_compile.compile(str(path), doraise=True)


def test_module_defines_the_slicer_classes():
    classes = {n.name: n for n in ast.walk(_module_tree()) if isinstance(n, ast.ClassDef)}
    expected_bases = {
        "VMGGARegistration": "ScriptedLoadableModule",
        "VMGGARegistrationWidget": "ScriptedLoadableModuleWidget",
        "VMGGARegistrationLogic": "ScriptedLoadableModuleLogic",
        "VMGGARegistrationTest": "ScriptedLoadableModuleTest",
    }
    for name, base in expected_bases.items():
        assert base in [ast.unparse(b) for b in classes[name].bases], name
    decorators = [ast.unparse(d) for d in classes["VMGGARegistrationParameterNode"].decorator_list]
    assert decorators == ["parameterNodeWrapper"]
    tests = [f.name for f in classes["VMGGARegistrationTest"].body if isinstance(f, ast.FunctionDef)]
    assert "runTest" in tests and "test_RegisterMovedMRHead" in tests


def test_logic_run_takes_keyword_arguments():
    methods = [f for f in _class("VMGGARegistrationLogic").body if isinstance(f, ast.FunctionDef)]
    names = [a.arg for a in next(f for f in methods if f.name == "run").args.args]
    assert names[:3] == ["self", "fixed", "moving"]
    expected = {
        "preset",
        "matcher",
        "device",
        "initial_transform",
        "output_transform",
        "output_volume",
        "wait",
    }
    assert expected <= set(names)


def test_nothing_is_installed_at_import_time():
    """pip/torch installation is only reachable from functions, never at module level."""
    tree = _module_tree()
    top_level_calls = [ast.unparse(n) for s in tree.body if not isinstance(s, ast.FunctionDef | ast.ClassDef)
                       for n in ast.walk(s) if isinstance(n, ast.Call)]  # fmt: skip
    assert not [c for c in top_level_calls if "pip_install" in c or "installTorch" in c]
    assert "torch" not in {a.name for s in tree.body if isinstance(s, ast.Import) for a in s.names}


def test_helpers_import_without_slicer_qt_vtk_or_the_core():
    blocked = ["slicer", "qt", "ctk", "vtk", "vmgga", "torch"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"sys.path.insert(0, {str(MODULE_DIR)!r})\n"
        "import VMGGARegistrationLib.command, VMGGARegistrationLib.events, VMGGARegistrationLib.outputs\n"
        "import VMGGARegistrationLib.process, VMGGARegistrationLib.dependencies\n"
        "import VMGGARegistrationLib.review, VMGGARegistrationLib.similarity, VMGGARegistrationLib.panel\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- documentation ----------------------------------------------------------------------------


def test_install_docs_cover_both_ways_and_show_no_gui_picture():
    readme = (REPO_DIR / "README.md").read_text()
    start = readme.index("## 3D Slicer extension")
    end = readme.index("\n## ", start + 1)
    text = readme[start:end]  # the README's Slicer section
    assert "Extension Wizard" in text
    assert "Developer mode" in text
    assert "![" not in text and "<img" not in text.lower()
