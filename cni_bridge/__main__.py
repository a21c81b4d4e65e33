from cni_bridge.plugin import main

main()
