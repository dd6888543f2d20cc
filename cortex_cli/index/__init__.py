"""The token index: building it, its writer, the rankings read from it, explain/show, the bias audit."""
