"""Generated images: sampling into the store, token blobs, PNGs that carry their tokens, figures."""
