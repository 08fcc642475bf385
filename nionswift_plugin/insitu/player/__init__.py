"""The In-situ Player (a camera that plays recorded image stacks) and the Recorder glue (Swift side, thin).

Pacing, reading and drift correction are in :mod:`processing.execution.playback` and :mod:`processing.io`.
"""
