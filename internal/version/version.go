// Package version holds the two versions the project reports: the add-on
// (package) version and the core version, which names the upstream
// corosync-qnetd release whose protocol and behaviour the core matches.
package version

// AddOn is the add-on / package version, set at build time with
// -ldflags "-X github.com/qnetd-addon/qnetd/internal/version.AddOn=...".
var AddOn = "dev"

// Core is the upstream corosync-qnetd version whose wire protocol and
// observable behaviour the core implements.
var Core = "3.0.3"
