// Package auth is the API's access control: bearer keys (created with `dualledger keys create`,
// stored only as a sha256 of the token), the scopes they grant, the ledgers and the member bank
// they are limited to, and a keyring that the server authenticates against without a database
// round trip per request. docs/security.md has the threat model and the scope table.
package auth
