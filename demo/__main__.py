"""make demo: the suite doing its main job, in namespaces of its own."""
from demo.hostlocal import main
main()
