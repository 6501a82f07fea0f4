package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/internal/status"
	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// scrape serves /metrics over clusters of the given names.
func scrape(t *testing.T, names ...string) (int, string) {
	t.Helper()
	st := &engine.Status{}
	for _, n := range names {
		st.Clusters = append(st.Clusters, engine.ClusterStatus{Name: n, Nodes: []engine.NodeStatus{{NodeID: 1}}})
	}
	w := New(Config{Status: func(context.Context) (*engine.Status, error) { return st, nil }, Log: zerolog.Nop()})
	return get(t, w, "127.0.0.1:1", "/metrics")
}

var clusterLabel = regexp.MustCompile(`qnetd_cluster_nodes\{algorithm="[^"]*",cluster="((?:[^"\\]|\\.)*)"\}`)

// labelled is the cluster label of every qnetd_cluster_nodes series.
func labelled(body string) []string {
	var out []string
	for _, m := range clusterLabel.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestMetricsLabelAtMostMaxLabelledClusters: of 40 clusters the 32 oldest
// get series of their own; the others are counted.
func TestMetricsLabelAtMostMaxLabelledClusters(t *testing.T) {
	var names []string
	for i := range MaxLabelledClusters + 8 {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	code, body := scrape(t, names...)
	require.Equal(t, http.StatusOK, code, body)
	require.ElementsMatch(t, names[:MaxLabelledClusters], labelled(body))
	require.Equal(t, 2*MaxLabelledClusters, strings.Count(body, "qnetd_cluster_votes{"))
	require.Contains(t, body, "qnetd_clusters 40\n")
	require.Contains(t, body, "qnetd_clusters_unlabelled 8\n")
}

// TestMetricsSurviveClientChosenNames: names that are not UTF-8, 30 kB
// long, or alike once shortened do not break the scrape for everybody
// (the exposition format refuses invalid UTF-8 and repeated series).
func TestMetricsSurviveClientChosenNames(t *testing.T) {
	long := strings.Repeat("x", 30000)
	code, body := scrape(t, "pve", "bad\xffname", long, long+"y", "a\x01", status.ShortName(long))
	require.Equal(t, http.StatusOK, code, body)
	got := labelled(body)
	require.Len(t, got, 5)
	require.Contains(t, got, "pve")
	for _, l := range got {
		require.LessOrEqual(t, len(l), status.MaxNameBytes, l)
	}
	require.Contains(t, body, "qnetd_clusters_unlabelled 1\n", "the name that reads like another's shortened one")
}

// TestScrapesShareAStatusCopy: scrapes in a loop ask the engine for its
// status at most once a second; a later scrape sees a new copy.
func TestScrapesShareAStatusCopy(t *testing.T) {
	calls := 0
	w := New(Config{Status: func(context.Context) (*engine.Status, error) { calls++; return &engine.Status{}, nil }, Log: zerolog.Nop()})
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	w.metrics.now = func() time.Time { return now }
	h := w.ScrapeHandler("")
	get := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		require.Equal(t, http.StatusOK, rec.Code)
	}
	for i := 0; i < 50; i++ {
		get()
	}
	require.Equal(t, 1, calls)
	now = now.Add(statusEvery)
	get()
	require.Equal(t, 2, calls)
}
