# The exact merge stage alone; applies to any model. Outputs stay equal up to float rounding.
# It folds Pads, norms, per-channel Mul/Add, linear chains and average pools into the layers
# around them, merges summed and concatenated parallel Convs, fuses activations and tidies
# reshapes (see std.merge in stdlib/std/vision.mcr and docs/recipes.md).
use std.merge
