# The Terraform twin of testdata/apply/bench_fleet.star, for
# terraform_vs_studiorun.sh: a pool, a base volume uploaded from base.img,
# a NAT network and, per host, a copy-on-write overlay and a domain whose
# NIC has a fixed MAC, address and host name (the provider writes the DHCP
# reservation into the network). All named tf-bench-*.

terraform {
  required_providers {
    libvirt = { source = "dmacvicar/libvirt" }
  }
}

variable "uri" { default = "qemu:///system" }
variable "host_count" { default = 50 }
variable "memory" { default = 128 }
variable "running" { default = false }
variable "pool_path" { default = "/tmp/tf-bench-pool" }
variable "base_image" { default = "base.img" }

provider "libvirt" {
  uri = var.uri
}

resource "libvirt_pool" "pool" {
  name = "tf-bench-pool"
  type = "dir"
  target {
    path = var.pool_path
  }
}

resource "libvirt_volume" "base" {
  name   = "tf-bench-base.qcow2"
  pool   = libvirt_pool.pool.name
  source = var.base_image
  format = "qcow2"
}

resource "libvirt_network" "net" {
  name      = "tf-bench-net"
  mode      = "nat"
  domain    = "bench.test"
  addresses = ["10.251.42.0/24"]
  dhcp {
    enabled = true
  }
}

resource "libvirt_volume" "disk" {
  count          = var.host_count
  name           = format("tf-bench-h%03d.qcow2", count.index + 1)
  pool           = libvirt_pool.pool.name
  base_volume_id = libvirt_volume.base.id
  format         = "qcow2"
}

resource "libvirt_domain" "host" {
  count   = var.host_count
  name    = format("tf-bench-h%03d", count.index + 1)
  vcpu    = 1
  memory  = var.memory
  running = var.running
  disk {
    volume_id = libvirt_volume.disk[count.index].id
  }
  network_interface {
    network_id = libvirt_network.net.id
    mac        = format("02:00:00:BF:00:%02X", count.index + 1)
    addresses  = [cidrhost("10.251.42.0/24", 11 + count.index)]
    hostname   = format("tf-bench-h%03d", count.index + 1)
  }
}
