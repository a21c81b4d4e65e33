from cni_loopback.plugin import main

main()
