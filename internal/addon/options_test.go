package addon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOptionFiles: every good/*.json loads; every bad/*.json fails with the
// message in the .err file beside it.
func TestOptionFiles(t *testing.T) {
	good, _ := filepath.Glob("testdata/options/good/*.json")
	require.NotEmpty(t, good)
	for _, f := range good {
		_, err := LoadOptions(f)
		require.NoError(t, err, f)
	}
	bad, _ := filepath.Glob("testdata/options/bad/*.json")
	require.NotEmpty(t, bad)
	for _, f := range bad {
		want, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".err")
		require.NoError(t, err)
		_, err = LoadOptions(f)
		require.EqualError(t, err, strings.TrimSpace(string(want)), f)
	}
}

// TestPathsFromEnvironment: the container's defaults, overrides, and an
// empty value meaning "none" for the link and the user (a local run).
func TestPathsFromEnvironment(t *testing.T) {
	p, err := LoadPaths(map[string]string{})
	require.NoError(t, err)
	require.Equal(t, "/etc/corosync/qnetd/nssdb", p.NSSLink)
	require.Equal(t, "coroqnetd", p.User)
	require.Equal(t, "", p.IngressAddr, "the Supervisor assigns it at start")
	require.Equal(t, "http://supervisor", p.Supervisor, "its MQTT service")
	require.Equal(t, "http://supervisor/core/api", p.SupervisorAPI, "Home Assistant's REST API")

	p, err = LoadPaths(map[string]string{"QNETD_ADDON_NSS_LINK": "", "QNETD_ADDON_USER": "", "QNETD_ADDON_LISTEN": "127.0.0.1:0"})
	require.NoError(t, err)
	require.Equal(t, "", p.NSSLink)
	require.Equal(t, "", p.User)
	require.Equal(t, "127.0.0.1:0", p.ListenAddr)

	_, err = LoadPaths(map[string]string{"QNETD_ADDON_LISTEN": "5403"})
	require.ErrorContains(t, err, `QNETD_ADDON_LISTEN "5403": want host:port`)
	_, err = LoadPaths(map[string]string{"QNETD_ADDON_LISTEN": ":99999"})
	require.ErrorContains(t, err, "want a port from 0 to 65535")
}
