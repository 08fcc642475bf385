"""File input/output: image stacks and spectrum images read lazily (RosettaSciIO, h5py, tifffile), recordings.

No Swift import: the same readers serve the Player, the offline runs, the stack tools and the CLI.
"""
