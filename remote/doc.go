// Package remote is kmsctl's SSH transport: one verified, reused connection per host that runs
// commands, moves files atomically over SFTP and opens TCP tunnels. It knows nothing of the rest of
// kmsctl.
package remote
