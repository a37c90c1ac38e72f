// Package kms is a client for the MinIO AIStor Key Manager API: mTLS from API keys, command frames
// on /v1/kms, health, version and /v1/db backup and restore.
package kms
