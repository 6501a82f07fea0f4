package addon

import (
	"encoding/json"
	"image"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// repo is the repository root (the add-on folder).
const repo = "../.."

// schemaDir finds the Home Assistant schemas beside the checkout.
func schemaDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{"../../../shared/ha-schema", "../../shared/ha-schema"} {
		if _, err := os.Stat(filepath.Join(d, "config.schema.json")); err == nil {
			return d
		}
	}
	if os.Getenv("CI") != "" || os.Getenv("QNETD_REQUIRE_UPSTREAM") != "" {
		t.Fatal("the Home Assistant schemas (shared/ha-schema beside the checkout) are missing")
	}
	t.Skip("shared/ha-schema not found beside the checkout")
	return ""
}

// loadYAML reads YAML and converts it to JSON types.
func loadYAML(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var v any
	require.NoError(t, yaml.Unmarshal(data, &v), path)
	j, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(j, &out))
	return out
}

func validate(t *testing.T, schemaPath string, doc any) {
	t.Helper()
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(schemaPath)
	require.NoError(t, err)
	require.NoError(t, sch.Validate(doc), "%s", schemaPath)
}

func TestConfigYAMLValidatesAgainstBothSchemas(t *testing.T) {
	dir := schemaDir(t)
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml"))
	validate(t, filepath.Join(dir, "config.schema.json"), cfg)
	validate(t, filepath.Join(dir, "supervisor-config.schema.json"), cfg)
	validate(t, filepath.Join(dir, "build.schema.json"), loadYAML(t, filepath.Join(repo, "build.yaml")))
	validate(t, filepath.Join(dir, "repository.schema.json"), loadYAML(t, filepath.Join(repo, "repository.yaml")))
	for _, lang := range []string{"en", "de"} {
		validate(t, filepath.Join(dir, "translations.schema.json"), loadYAML(t, filepath.Join(repo, "translations", lang+".yaml")))
	}
}

// TestLinterRulesInCode checks what the add-on linter checks outside its
// schema: no key set to its default, no watchdog, required settings.
func TestLinterRulesInCode(t *testing.T) {
	dir := schemaDir(t)
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml")).(map[string]any)
	var schema struct {
		Properties map[string]struct {
			Default any `json:"default"`
		} `json:"properties"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.schema.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &schema))
	for k, v := range cfg {
		if d := schema.Properties[k].Default; d != nil {
			require.False(t, reflect.DeepEqual(d, v), "config.yaml key %q is set to its default %v: the linter rejects it", k, v)
		}
	}
	require.NotContains(t, cfg, "watchdog", "the linter rejects watchdog; the Dockerfile has a HEALTHCHECK")
	require.Equal(t, false, cfg["init"])
	require.Equal(t, "services", cfg["startup"])
	require.Equal(t, true, cfg["host_network"])
	require.Equal(t, true, cfg["ingress"])
	require.Equal(t, float64(0), cfg["ingress_port"], "the Supervisor assigns the port (host network: a fixed one may be taken)")
	require.ElementsMatch(t, []any{"aarch64", "amd64"}, cfg["arch"])
	schemaOpts := cfg["schema"].(map[string]any)
	require.Equal(t, "list(trace|debug|info|notice|warning|error|fatal)", schemaOpts["log_level"])
	levels := strings.Split(strings.TrimSuffix(strings.TrimPrefix(schemaOpts["log_level"].(string), "list("), ")"), "|")
	require.Len(t, LogLevels, len(levels))
	for _, l := range levels {
		require.Contains(t, LogLevels, l)
	}
}

// TestOptionsMatchCode: config.yaml's options and schema are exactly the
// fields of Options, and its defaults are Defaults().
func TestOptionsMatchCode(t *testing.T) {
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml")).(map[string]any)
	var fields []string
	rt := reflect.TypeOf(Options{})
	for i := 0; i < rt.NumField(); i++ {
		fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	require.ElementsMatch(t, fields, keys(cfg["schema"].(map[string]any)))
	opts, err := json.Marshal(cfg["options"])
	require.NoError(t, err)
	var o Options
	require.NoError(t, json.Unmarshal(opts, &o))
	require.Equal(t, Defaults(), o)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestEveryOptionIsTranslatedAndDocumented(t *testing.T) {
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml")).(map[string]any)
	docs, err := os.ReadFile(filepath.Join(repo, "DOCS.md"))
	require.NoError(t, err)
	for _, opt := range keys(cfg["schema"].(map[string]any)) {
		for _, lang := range []string{"en", "de"} {
			tr := loadYAML(t, filepath.Join(repo, "translations", lang+".yaml")).(map[string]any)
			entry, ok := tr["configuration"].(map[string]any)[opt].(map[string]any)
			require.True(t, ok, "option %s has no %s translation", opt, lang)
			require.NotEmpty(t, entry["name"], "%s: %s", lang, opt)
			require.NotEmpty(t, entry["description"], "%s: %s", lang, opt)
		}
		require.Contains(t, string(docs), "| `"+opt+"` |", "DOCS.md has no options table row for %s", opt)
	}
}

func TestBuildYAMLMatchesDockerfile(t *testing.T) {
	build := loadYAML(t, filepath.Join(repo, "build.yaml")).(map[string]any)
	df, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^ARG BUILD_FROM=(\S+)$`).FindSubmatch(df)
	require.NotNil(t, m, "the Dockerfile sets ARG BUILD_FROM itself")
	require.Equal(t, build["build_from"].(map[string]any)["amd64"], string(m[1]))
	from := build["build_from"].(map[string]any)
	require.Equal(t, strings.Replace(from["amd64"].(string), "amd64", "aarch64", 1), from["aarch64"], "same base image and tag for both arches")
	for _, want := range []string{"HEALTHCHECK --interval=30s", "CGO_ENABLED=0", "-trimpath", "COPY rootfs /", "io.hass.version", "dev.qnetd.core-version", "org.opencontainers.image.version"} {
		require.Contains(t, string(df), want)
	}
	require.NotRegexp(t, `(?m)^(ENTRYPOINT|CMD)\b`, string(df))
}

func TestChangelogTopHeadingIsTheVersion(t *testing.T) {
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml")).(map[string]any)
	cl, err := os.ReadFile(filepath.Join(repo, "CHANGELOG.md"))
	require.NoError(t, err)
	first := strings.SplitN(string(cl), "\n", 2)[0]
	require.Equal(t, "# "+cfg["version"].(string), first)
}

func TestIconAndLogo(t *testing.T) {
	for name, size := range map[string]int{"icon.png": 128, "logo.png": 0} {
		f, err := os.Open(filepath.Join(repo, name))
		require.NoError(t, err)
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		require.NoError(t, err, name)
		require.Equal(t, "png", format, name)
		if size > 0 {
			require.Equal(t, size, cfg.Width, name)
			require.Equal(t, size, cfg.Height, name)
		}
	}
}

// TestWorkflows: the GitHub workflows that build, publish and lint the
// add-on pass actionlint (which also runs shellcheck on their scripts).
func TestWorkflows(t *testing.T) {
	for _, name := range []string{"builder.yaml", "lint.yaml"} {
		require.FileExists(t, filepath.Join(repo, ".github", "workflows", name))
	}
	cmd := exec.Command("go", "tool", "actionlint")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "actionlint:\n%s", out)
}

// TestStoreConventions: prebuilt images named per architecture, an
// experimental stage while 0.x, a license, and a build context that
// holds only what the image needs.
func TestStoreConventions(t *testing.T) {
	cfg := loadYAML(t, filepath.Join(repo, "config.yaml")).(map[string]any)
	wf := loadYAML(t, filepath.Join(repo, ".github", "workflows", "builder.yaml")).(map[string]any)
	image := wf["env"].(map[string]any)["IMAGE_NAME"].(string)
	require.Equal(t, "ghcr.io/qnetd-addon/{arch}-"+image, cfg["image"], "the workflow publishes what the Supervisor pulls")
	if strings.HasPrefix(cfg["version"].(string), "0.") {
		require.Equal(t, "experimental", cfg["stage"])
	}
	require.FileExists(t, filepath.Join(repo, "LICENSE"))
	ignore, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	require.NoError(t, err)
	for _, line := range []string{"*", "!cmd/", "!internal/", "!qnetd/", "!rootfs/", "!go.mod", "!go.sum"} {
		require.Contains(t, strings.Split(string(ignore), "\n"), line)
	}
}

// TestDocsListEveryClusterState: DOCS.md's table has a row per state the
// engine reports, and no other.
func TestDocsListEveryClusterState(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join(repo, "DOCS.md"))
	require.NoError(t, err)
	rows := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| a? ?[a-z]").FindAllStringSubmatch(string(docs), -1)
	var inDocs []string
	for _, r := range rows {
		for _, s := range engine.States() {
			if r[1] == string(s) {
				inDocs = append(inDocs, r[1])
			}
		}
	}
	var want []string
	for _, s := range engine.States() {
		want = append(want, string(s))
	}
	require.Equal(t, want, inDocs)
}
