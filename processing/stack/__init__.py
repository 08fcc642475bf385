"""Stack tools: camera corrections, auto-exposure and dark references, focal / energy series planning and
acquisition engine, scaling of a series to its first exposure (issue 10). SDSD alignment is in
:mod:`processing.alignment.sdsd`."""
