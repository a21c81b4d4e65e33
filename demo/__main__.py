"""make demo: the suite doing its main job, in namespaces of its own."""
from demo.overlay import main

main()
