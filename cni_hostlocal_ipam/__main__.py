from cni_hostlocal_ipam.plugin import main

main()
