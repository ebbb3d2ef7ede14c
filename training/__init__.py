"""Training and inference on top of the loader.

The train loop, predict, export, the decode-once cache builder and the ``rsna-mammo`` CLI.
"""
