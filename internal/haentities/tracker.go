package haentities

import (
	"slices"
	"time"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
)

// Limits that bound what the add-on keeps and publishes.
const (
	// DefaultMaxClusters is how many clusters have entities at once.
	DefaultMaxClusters = 32
	// maxNodes is how many node entities a cluster gets.
	maxNodes = 64
	// expiryEvery is how often a cluster's certificate file is read
	// again (a new pairing replaces it).
	expiryEvery = time.Hour
)

// tracked is a cluster that has entities.
type tracked struct {
	key   string
	nodes []uint32 // sorted; every one has an entity
	live  bool
	// goneSince is when qnetd stopped knowing the cluster.
	goneSince time.Time
	// holdUntil: a cluster adopted from the broker's retained state keeps
	// that state until then, so that a restart does not flap it to gone
	// while its nodes reconnect.
	holdUntil time.Time
	doc       Doc
	expiry    time.Time
	expiryAt  time.Time // when expiry was last read
}

// tracker turns engine status copies into each cluster's Doc; clusters
// that leave the engine stay, as gone, until forgotten or evicted.
type tracker struct {
	max        int
	certExpiry func(cluster string) (time.Time, bool)
	byKey      map[string]*tracked
}

func newTracker(max int, certExpiry func(string) (time.Time, bool)) *tracker {
	if max <= 0 {
		max = DefaultMaxClusters
	}
	return &tracker{max: max, certExpiry: certExpiry, byKey: map[string]*tracked{}}
}

// update applies a status copy. It returns the clusters it evicted to
// make room and the names of clusters that got no entities because
// every place is taken by a cluster qnetd still knows.
func (t *tracker) update(st *engine.Status, now time.Time) (evicted []*tracked, refused []string) {
	seen := make(map[string]bool, len(st.Clusters))
	for i := range st.Clusters {
		cs := &st.Clusters[i]
		key := Key(cs.Name)
		seen[key] = true
		tr := t.byKey[key]
		if tr == nil {
			if len(t.byKey) >= t.max {
				victim := t.oldestGone()
				if victim == nil {
					refused = append(refused, cs.Name)
					continue
				}
				delete(t.byKey, victim.key)
				evicted = append(evicted, victim)
			}
			tr = &tracked{key: key}
			t.byKey[key] = tr
		}
		tr.live, tr.holdUntil = true, time.Time{}
		for j := range cs.Nodes {
			tr.addNode(cs.Nodes[j].NodeID)
			for _, c := range cs.Nodes[j].ConfigNodes {
				tr.addNode(c.NodeID)
			}
		}
		if t.certExpiry != nil && (tr.expiryAt.IsZero() || now.Sub(tr.expiryAt) >= expiryEvery) {
			exp, ok := t.certExpiry(cs.Name)
			if !ok {
				exp = time.Time{}
			}
			tr.expiry, tr.expiryAt = exp, now
		}
		tr.doc = liveDoc(cs, tr.nodes, tr.expiry)
	}
	for key, tr := range t.byKey {
		if seen[key] || tr.doc.State == StateGone || now.Before(tr.holdUntil) {
			continue
		}
		tr.live, tr.goneSince = false, now
		tr.doc = goneDoc(tr.doc, tr.nodes)
	}
	return evicted, refused
}

func (tr *tracked) addNode(id uint32) {
	i, found := slices.BinarySearch(tr.nodes, id)
	if found || len(tr.nodes) >= maxNodes {
		return
	}
	tr.nodes = slices.Insert(tr.nodes, i, id)
}

// oldestGone is the cluster gone for longest, nil when every cluster is
// known to qnetd (or held after adoption).
func (t *tracker) oldestGone() *tracked {
	var out *tracked
	for _, tr := range t.byKey {
		if tr.live || tr.doc.State != StateGone {
			continue
		}
		if out == nil || tr.goneSince.Before(out.goneSince) {
			out = tr
		}
	}
	return out
}

// adopt takes a cluster from a state this add-on published before it
// restarted (the broker kept it), so that it can still be forgotten. A
// cluster already tracked, or one past the limit, is ignored.
func (t *tracker) adopt(d Doc, now time.Time, hold time.Duration) bool {
	key := Key(d.Cluster)
	if t.byKey[key] != nil || len(t.byKey) >= t.max || !slices.Contains(States(), d.State) {
		return false
	}
	tr := &tracked{key: key, doc: d, goneSince: now, holdUntil: now.Add(hold)}
	for _, id := range d.nodeIDs() {
		tr.addNode(id)
	}
	if d.Votes == nil {
		tr.doc.Votes = map[string]string{}
	}
	t.byKey[key] = tr
	return true
}

// forget drops a cluster that qnetd does not know; it reports false when
// the cluster is unknown here or still connected.
func (t *tracker) forget(key string) (*tracked, bool) {
	tr := t.byKey[key]
	if tr == nil || tr.live {
		return tr, false
	}
	delete(t.byKey, key)
	return tr, true
}

// sorted returns the tracked clusters in key order.
func (t *tracker) sorted() []*tracked {
	out := make([]*tracked, 0, len(t.byKey))
	for _, tr := range t.byKey {
		out = append(out, tr)
	}
	slices.SortFunc(out, func(a, b *tracked) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	return out
}
