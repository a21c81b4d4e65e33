from cni_vxlan.plugin import main

main()
