from cni_suite.cli import main

main()
