"""SessionRunHooks (TensorFlow only, no widgets). Importing a module here imports TensorFlow."""
