"""Pure helpers of the VMGGARegistration Slicer module.

Nothing here imports ``slicer``, ``qt``, ``vtk`` or ``vmgga``: these modules run (and are tested)
in any Python, and the Slicer module only glues them to the GUI and the MRML scene.
"""
