// Package playbooks decodes playbook YAML, embeds the built-in playbooks and runs plays over an
// inventory with the task engine.
package playbooks
