// Package inventory reads Ansible-style YAML inventories (all/children/hosts/vars) and resolves
// each host's variables, connection settings and Key Manager layout. It is pure: no I/O beyond
// reading the inventory files.
package inventory
