"""Stage 5, resolve: one test file per module of netdsl/resolve/."""
