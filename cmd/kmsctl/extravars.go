package main

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseExtraVars merges the values of repeated -e flags, later ones winning.
// Each value is key=value (the value is a string), @FILE (a YAML or JSON
// mapping read from FILE) or an inline YAML/JSON mapping ('{"a": 1}').
func parseExtraVars(values []string) (map[string]any, error) {
	vars := map[string]any{}
	for _, v := range values {
		switch {
		case strings.HasPrefix(v, "@"):
			file := strings.TrimPrefix(v, "@")
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("read extra vars -e @%s: %w", file, err)
			}
			m, err := decodeVarsMap(b)
			if err != nil {
				return nil, fmt.Errorf("extra vars file %s: %w", file, err)
			}
			merge(vars, m)
		case strings.HasPrefix(strings.TrimSpace(v), "{"):
			m, err := decodeVarsMap([]byte(v))
			if err != nil {
				return nil, fmt.Errorf("extra vars -e %q: %w", v, err)
			}
			merge(vars, m)
		default:
			k, val, ok := strings.Cut(v, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("extra vars -e %q: want key=value, @file.yml or a JSON object", v)
			}
			vars[k] = val
		}
	}
	return vars, nil
}

// decodeVarsMap decodes a YAML (or JSON, a subset of YAML) mapping.
func decodeVarsMap(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode mapping: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("decode mapping: want a mapping of variable names to values")
	}
	return m, nil
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}
