package nfs

// The nfs driver (an export: server package, directory, /etc/exports line,
// exportfs -ra, service; a mount: client package, mount point, one fstab
// entry, mounted) lands with the SSH task engine, issue #4.
