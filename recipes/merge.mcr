# The exact merge stage alone; applies to any model. Outputs stay equal up to float rounding.
# Today it folds BatchNormalization and fuses activations into the Conv/Gemm before them; the
# other DeepRebirth merges (linear chains, branches) join this stage as they are built (#4).
use std.merge
