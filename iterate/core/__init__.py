"""The core: errors, the manifest, the ledger, the chunk plan, the keypoint schema, COCO and image reading.

It imports no other project package; everything else builds on it."""
