// Package haentities publishes qnetd's clusters as Home Assistant
// entities: over MQTT discovery when the Supervisor offers a broker
// (config.yaml: services: mqtt:want), else through the Supervisor's proxy
// to Home Assistant's REST API. Both read the engine's status copy
// (engine.Status) on a timer and on every engine event, and send only what
// changed.
//
// Every cluster is one Home Assistant device whose ids derive from Key:
// a readable part of the name and a hash of the name's exact bytes, so
// that "pve", "pve_" and "PVE" never share an entity.
package haentities

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// StateGone is the cluster state of a cluster that qnetd no longer knows
// (every node disconnected); engine.States has the others.
const StateGone = "gone"

// States lists every value of a cluster's state entity.
func States() []string {
	out := make([]string, 0, len(engine.States())+1)
	for _, s := range engine.States() {
		out = append(out, string(s))
	}
	return append(out, StateGone)
}

// Key names a cluster in topics, unique ids and entity ids: up to 24
// characters of the name in lower case letters, digits and "_", then "_"
// and 8 hex digits of the SHA-256 of the exact name bytes. A plaintext
// client may send any bytes as its cluster name; the hash keeps names
// apart that read alike.
func Key(name string) string {
	sum := sha256.Sum256([]byte(name))
	return slug(name, 24) + "_" + hex.EncodeToString(sum[:4])
}

// slug keeps ASCII letters (lowered) and digits, turns every run of
// anything else into one "_", trims "_" and cuts to max bytes.
func slug(s string, max int) string {
	var b strings.Builder
	under := false
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		default:
			if b.Len() > 0 && !under {
				b.WriteByte('_')
			}
			under = true
			continue
		}
		b.WriteByte(c)
		under = false
	}
	out := strings.TrimRight(b.String(), "_")
	if out == "" {
		return "cluster"
	}
	return out
}

// displayName is a cluster name fit for a device name: valid UTF-8, no
// control characters, at most 64 characters.
func displayName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	var b strings.Builder
	n := 0
	for _, r := range name {
		if n == 64 {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// maxStateLen is Home Assistant's limit on a state's length.
const maxStateLen = 255

// cut shortens s to at most max characters.
func cut(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// Doc is the state of one cluster as every entity of its device reads
// it: the MQTT state topic's JSON and the source of the REST states.
// Binary values are "ON" or "OFF", MQTT binary sensors' default payloads.
type Doc struct {
	Cluster string `json:"cluster"`
	// State is one of States().
	State  string `json:"state"`
	Reason string `json:"reason"`
	// Vote: a partition of the cluster holds the qdevice vote.
	Vote           string   `json:"vote"`
	NodesConnected int      `json:"nodes_connected"`
	NodeIDs        []uint32 `json:"node_ids"`
	NodesWithVote  []uint32 `json:"nodes_with_vote"`
	// Votes has every node that has an entity, by node id.
	Votes      map[string]string `json:"votes"`
	Algorithm  string            `json:"algorithm,omitempty"`
	TieBreaker string            `json:"tie_breaker,omitempty"`
	// Decision is the last decision in words; empty before the first.
	Decision string `json:"decision"`
	// CertExpiry is the cluster certificate's end of validity
	// (RFC 3339, UTC), empty when there is no certificate file.
	CertExpiry string `json:"cert_expiry,omitempty"`
}

func onOff(b bool) string {
	if b {
		return "ON"
	}
	return "OFF"
}

// decisionText says what the cluster's last decision was: ffsplit's
// choice of partition in the status page's words, for the algorithms
// that decide per node the state's reason.
func decisionText(cs *engine.ClusterStatus) string {
	d := cs.Decision
	if !d.Made {
		return cs.StateReason
	}
	if len(d.Winners) == 0 {
		return "no partition gets the vote: " + d.Reason
	}
	ids := make([]string, len(d.Winners))
	for i, id := range d.Winners {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	return fmt.Sprintf("partition {%s} gets the vote: %s", strings.Join(ids, ","), d.Reason)
}

// liveDoc describes a cluster qnetd knows; nodes are the node ids that
// have entities (connected and configured ones).
func liveDoc(cs *engine.ClusterStatus, nodes []uint32, expiry time.Time) Doc {
	d := Doc{Cluster: cs.Name, State: string(cs.State), Reason: cs.StateReason,
		NodeIDs: []uint32{}, NodesWithVote: []uint32{}, Votes: map[string]string{},
		Algorithm: cs.Algorithm.String(), TieBreaker: cs.TieBreaker.String(), Decision: cut(decisionText(cs), maxStateLen)}
	if cs.Algorithm == wire.AlgoFFSplit && cs.KAP {
		d.TieBreaker += " (KAP Tie-breaker)"
	}
	for _, id := range nodes {
		d.Votes[strconv.FormatUint(uint64(id), 10)] = "OFF"
	}
	for i := range cs.Nodes {
		n := &cs.Nodes[i]
		d.NodeIDs = append(d.NodeIDs, n.NodeID)
		if n.HoldsVote() {
			d.NodesWithVote = append(d.NodesWithVote, n.NodeID)
			d.Votes[strconv.FormatUint(uint64(n.NodeID), 10)] = "ON"
		}
	}
	d.NodesConnected = len(d.NodeIDs)
	d.Vote = onOff(len(d.NodesWithVote) > 0)
	d.setExpiry(expiry)
	return d
}

// goneDoc describes a cluster that qnetd no longer knows: no node, no
// vote; the last decision and the certificate stay.
func goneDoc(last Doc, nodes []uint32) Doc {
	d := Doc{Cluster: last.Cluster, State: StateGone, Reason: "no node of this cluster is connected to qnetd",
		Vote: "OFF", NodeIDs: []uint32{}, NodesWithVote: []uint32{}, Votes: map[string]string{},
		Algorithm: last.Algorithm, TieBreaker: last.TieBreaker, Decision: last.Decision, CertExpiry: last.CertExpiry}
	for _, id := range nodes {
		d.Votes[strconv.FormatUint(uint64(id), 10)] = "OFF"
	}
	return d
}

func (d *Doc) setExpiry(t time.Time) {
	d.CertExpiry = ""
	if !t.IsZero() {
		d.CertExpiry = t.UTC().Format("2006-01-02T15:04:05+00:00")
	}
}

// nodeIDs are the node ids a Doc has entities for, in order.
func (d *Doc) nodeIDs() []uint32 {
	var out []uint32
	for k := range d.Votes {
		if id, err := strconv.ParseUint(k, 10, 32); err == nil {
			out = append(out, uint32(id))
		}
	}
	slices.Sort(out)
	return out
}

// An entity is one Home Assistant entity of a cluster device or of the
// add-on device. Its value comes from a Doc (REST) or from the same
// field of the state topic's JSON through a template (MQTT).
type entity struct {
	// Component is the Home Assistant domain (sensor, binary_sensor, button).
	Component string
	// Object is the entity's part of the ids ("state", "node_1_vote").
	Object string
	Name   string
	// Field is the Doc's JSON field the entity shows; Template, when
	// set, replaces the plain field lookup.
	Field    string
	Template string
	// Config is the rest of the discovery config (abbreviated keys).
	Config map[string]any
	// Value is the entity's state from a Doc, for the REST API
	// ("unknown" when the Doc has none).
	Value func(*Doc) string
}

// clusterEntities are a cluster device's entities for a Doc: the node
// vote entities follow the Doc's nodes, the certificate entity exists
// only while the cluster has a certificate file.
func clusterEntities(d *Doc) []entity {
	es := []entity{
		{Component: "sensor", Object: "state", Name: "State", Field: "state",
			Config: map[string]any{"dev_cla": "enum", "ops": States(), "ic": "mdi:vote"},
			Value:  func(d *Doc) string { return d.State }},
		{Component: "binary_sensor", Object: "vote", Name: "Partition with the vote", Field: "vote",
			Config: map[string]any{"ic": "mdi:account-group"},
			Value:  func(d *Doc) string { return strings.ToLower(d.Vote) }},
		{Component: "sensor", Object: "nodes", Name: "Connected nodes", Field: "nodes_connected",
			Config: map[string]any{"stat_cla": "measurement", "unit_of_meas": "nodes", "ic": "mdi:server-network"},
			Value:  func(d *Doc) string { return strconv.Itoa(d.NodesConnected) }},
		{Component: "sensor", Object: "decision", Name: "Last decision", Field: "decision",
			Config: map[string]any{"ic": "mdi:scale-balance"},
			Value: func(d *Doc) string {
				if d.Decision == "" {
					return "unknown"
				}
				return d.Decision
			}},
	}
	for _, id := range d.nodeIDs() {
		k := strconv.FormatUint(uint64(id), 10)
		es = append(es, entity{Component: "binary_sensor", Object: "node_" + k + "_vote", Name: "Node " + k + " has the vote",
			Template: "{{ value_json.votes['" + k + "'] }}", Config: map[string]any{"ic": "mdi:server"},
			Value: func(d *Doc) string { return strings.ToLower(d.Votes[k]) }})
	}
	if d.CertExpiry != "" {
		es = append(es, entity{Component: "sensor", Object: "cert_expiry", Name: "Certificate expiry", Field: "cert_expiry",
			Config: map[string]any{"dev_cla": "timestamp", "ent_cat": "diagnostic"},
			Value:  func(d *Doc) string { return d.CertExpiry }})
	}
	return es
}

// AddOnDoc is the add-on device's state.
type AddOnDoc struct {
	Clusters int `json:"clusters"`
	Clients  int `json:"clients"`
}

func addOnEntities() []addOnEntity {
	return []addOnEntity{
		{Object: "clusters", Name: "Clusters", Field: "clusters", Value: func(a AddOnDoc) int { return a.Clusters }},
		{Object: "clients", Name: "Connected clients", Field: "clients", Value: func(a AddOnDoc) int { return a.Clients }},
	}
}

// addOnEntity is a sensor of the add-on device.
type addOnEntity struct {
	Object, Name, Field string
	Value               func(AddOnDoc) int
}
