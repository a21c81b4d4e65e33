from cni_portmap.plugin import main

main()
