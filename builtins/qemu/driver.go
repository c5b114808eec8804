package qemu

// The qemu driver (the image builder: fetch and verify the ISO or take the
// base disk, serve http_files, boot qemu, type the boot command over QMP,
// wait for SSH, provision, shut down, convert and write the manifest) lands
// with issue #5.
