"""Adapters that the MONAI bundle (``monai_bundle/configs/*.json``) reaches through ``_target_``.

The bundle holds no registration logic: every pair goes through :func:`vmgga.register` and
:func:`vmgga.write_outputs`, exactly as ``vmgga register`` does. One module per concern:

* :mod:`~vmgga.bundle.config`: bundle settings -> :class:`~vmgga.config.RegistrationConfig`;
* :mod:`~vmgga.bundle.network`: the checkpoint, ``network_def`` and ``train.json``'s entry point;
* :mod:`~vmgga.bundle.pairs`: one pair or a datalist;
* :mod:`~vmgga.bundle.outputs`: each pair's output folder, committed only once complete;
* :mod:`~vmgga.bundle.runner`: registering every pair, one failure at a time;
* :mod:`~vmgga.bundle.evaluation`: label metrics of ``evaluate.json``.

Images are passed to :func:`vmgga.register` as paths, so the bundle reads DICOM folders and
NIfTI/NRRD/MHA files with the same reader, in the same LPS geometry, as the command line.
"""
