"""Teachers: operators that write caption candidates for each clip, one module per family."""
