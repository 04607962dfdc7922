"""Training data: scene sampling, rendering (`generate`), datasets and packs, index maps, augmentations."""
