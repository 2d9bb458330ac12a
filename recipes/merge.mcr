# The exact merge stage alone; applies to any model. Outputs stay equal up to float rounding.
# Today it folds BatchNormalization into the Conv/Gemm before it; the other DeepRebirth merges
# (activations, linear chains, branches) join this stage as they are built (issue #4).
use std.fold_norms
