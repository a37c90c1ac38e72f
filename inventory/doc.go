// Package inventory reads Ansible-style YAML inventories (all/children/hosts/vars) and resolves
// each host's variables, connection settings and Key Manager layout. It is pure: no I/O beyond
// reading the inventory files (and vars files), no network, no SSH.
//
// # Format
//
// The Ansible YAML inventory shape, so an existing inventory can be reused:
//
//	all:
//	  vars:
//	    ansible_user: admin
//	  hosts:
//	    bastion:
//	  children:
//	    kms:
//	      vars:
//	        ansible_become: yes
//	      hosts:
//	        kms1: { ansible_host: 10.0.0.1 }
//	        kms[2:3]:                  # host range: kms2, kms3
//
// A group may contain only hosts:, vars: and children:. A group may appear
// under several parents and a host in several groups; each is one group or
// host, merged. Top-level keys other than all are groups under all, as in
// Ansible. Hosts in no group but all are in the group "ungrouped".
//
// Load also reads, as Ansible does, the group_vars/ and host_vars/
// directories next to each inventory file (group_vars/kms.yml,
// group_vars/kms/*.yml, host_vars/kms1.yml, .yaml, .json or no extension),
// and accepts a directory as an inventory (its *.yml and *.yaml files).
// Vars files are decoded and checked like inventory vars.
//
// Decoding is strict and every problem is reported at once, as a
// *yamlpos.List whose lines read "FILE:LINE:COL: field: problem (what to
// do)": unknown keys in groups, hosts: or children: written as a list,
// wrongly typed or invalid values of the variables kmsctl knows (ansible_port:
// "abc", kms_storage_path: /etc), misspelt kms_*/ansible_* variable names
// (kms_storge_path), invalid host, group and variable names, duplicate keys,
// cycles in children, a name used for both a host and a group, two hosts with
// the same kms_endpoint written in the inventory, a storage path holding the
// node's own files, malformed YAML, an empty inventory. A refusal by the
// dangerous-path rule (package safepath) wraps a *safepath.Error.
//
// # Variable precedence
//
// Vars resolves a host's variables, lowest precedence first (later wins):
//
//  1. the Key Manager layout defaults (docs/design.md §3.8: kms_port 7373,
//     kms_storage_path /mnt/minio-kms, ...);
//  2. group vars: "all" first, then groups by depth (a group's depth is its
//     longest distance from all: children of all 1, their children 2, ...), so
//     a child group overrides its parent; groups at the same depth are ordered
//     by ansible_group_priority (default 1, higher wins) and then by name,
//     alphabetically, so of two sibling groups the one whose name sorts later
//     wins (Ansible's rule);
//  3. group_vars/ files next to the inventory, in the same group order: as
//     in Ansible, group_vars/all.yml beats group vars written in the
//     inventory file, and group_vars/kms.yml beats group_vars/all.yml;
//  4. host vars written in the inventory (when a host is listed in several
//     places, the last listing read wins; with several -i files, the later
//     file wins);
//  5. host_vars/ files next to the inventory;
//  6. extra vars (-e), over everything.
//
// Vars also sets Ansible's magic variables inventory_hostname,
// inventory_hostname_short and group_names (sorted, without all, with
// ungrouped). ansible_group_priority is a property of its group, not a host
// variable. Templates ({{ ... }}) in ordinary variables are returned as
// written, for the playbook engine to render; in the connection and kms_*
// variables below they are refused, since those are used before any
// templating.
//
// Extra vars come from ParseExtraVars: -e KEY=VALUE (a string, one
// variable per -e), -e @FILE (LoadVarsFile, a YAML or JSON mapping decoded
// as strictly as the inventory) or -e '{"k": 1}'. Every form gets the
// known-variable check (values, misspelt names); a secret variable written
// on the command line is refused, since any user sees it in ps.
//
// # Resolving a host: SSH settings and Key Manager variables
//
// Resolve resolves a host once, with -e applied, into a Host: its variables,
// its SSHSettings and its Key Manager layout (KMSNode), so that the engine
// and the dialer use one value and nothing resolves the host again. The
// SSH settings come from ansible_host, ansible_port, ansible_user,
// ansible_ssh_private_key_file, ansible_become (true/false, yes/no, on/off,
// 1/0), ansible_become_user (default root), and kmsctl's kms_ssh_host_keys
// (pinned host keys, authorized_keys format), kms_ssh_known_hosts,
// kms_ssh_proxy_jump ([user@]host[:port][,...]) and kms_api (direct or ssh).
// The layout (also alone from Node) comes from the kms_* variables: kms_endpoint (host:port as the cluster knows
// it; default ADDRESS:kms_port), kms_port, kms_storage_path, kms_config_file,
// kms_env_file, kms_certs_dir, kms_binary, kms_service, kms_user, kms_api,
// kms_ca_file. The storage path, the only path kmsctl ever wipes, must be
// absolute and clean, pass the dangerous-path rule of package safepath, and
// must not be or contain the config, env, certs or binary paths. Errors name the file
// and line of the variable that set the bad value ("-e" for extra vars).
//
// Resolve refuses what kmsctl cannot honour rather than ignoring it:
// ansible_connection other than ssh, and a ProxyJump/ProxyCommand hidden in
// ansible_ssh_common_args (or _extra_args, _args) when kms_ssh_proxy_jump
// is not set. Other ansible_ssh_*_args are not read; ~/.ssh/config is the
// place for such options.
//
// # Secrets
//
// Variables whose names contain api_key, hsm_key, password, passwd,
// passphrase, secret, token, credential or private (but not
// ..._private_key_file), or end in _pass, are secret (IsSecret). Secrets
// belong in the environment, a 0600 file or a command, not in an inventory;
// if present they are never printed: MaskedVars and Graph show
// "[REDACTED]", and validation errors never quote their values.
//
// # Host patterns
//
// Select implements Ansible host patterns for --limit and a play's hosts:
// all, *, host and group names, globs, ~regex, subscripts (kms[0]),
// a:b and a,b unions, &group intersections and !name exclusions.
//
// # Where kmsctl is stricter than Ansible
//
// What Ansible warns about is an error here: a host pattern that matches
// nothing, a name that is both a host and a group, invalid group and
// variable names. Host names are letters, digits, '.', '-', '_' or an IPv6
// address (they end up in ssh command lines and --limit patterns). YAML merge
// keys (<<) are not supported in inventory structure.
//
// # Use
//
//	inv, err := inventory.Load(paths...)           // -i, repeatable
//	extra, err := inventory.ParseExtraVars(eFlags) // -e, repeatable
//	hosts, err := inv.Select(limit)                 // --limit, a play's hosts:
//	for _, h := range hosts {
//		host, err := inv.Resolve(h, extra) // once: host.Vars, host.SSH, host.KMS
//	}
//	err = inv.Graph(os.Stdout, withVars)   // kmsctl inventory graph [--vars]
//	shown, err := inv.MaskedVars(h, nil)      // kmsctl inventory list
package inventory
