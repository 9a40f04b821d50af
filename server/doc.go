// Package server is the sealfs storage server: the HTTPS API of
// docs/protocol.md over a metadata store (server/meta) and an at-rest
// encrypted blob store (server/atrest over server/blob). Chunks of up to
// InlineChunkMax bytes are kept in the metadata store instead, sealed at
// rest the same way.
//
// It never sees plaintext, names or client keys. What it checks is what it
// can check without them: who is asking (sessions, throttled logins), that
// every object belongs to the asker (another account's objects answer 404),
// that every uploaded chunk carries a valid transfer HMAC before a byte is
// written, and that every multi-step change is one transaction. What it
// stores is sealed again at rest under its own rotating keys.
package server
