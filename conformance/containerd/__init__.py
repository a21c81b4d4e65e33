"""containerd as a CNI client in a throw-away node (test_containerd.py): node set-up, image, CRI client and proto."""
