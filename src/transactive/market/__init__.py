"""Markets that clear bid curves: the uniform-price double auction (more to come)."""
