package haentities

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/qnetd-addon/qnetd/qnetd/engine"
	"github.com/qnetd-addon/qnetd/qnetd/wire"
)

// Home Assistant's MQTT discovery schema, as the public home-assistant/core
// repository defines it in homeassistant/components/mqtt at revision
// 29e61232207d9e6d7b4eb29a90265c356b462f94 (2024-02-14, 2024.3 in
// development): abbreviations.py (ABBREVIATIONS, DEVICE_ABBREVIATIONS,
// ORIGIN_ABBREVIATIONS), discovery.py (TOPIC_MATCHER, SUPPORTED_COMPONENTS;
// abbreviations expanded in the payload, the device, the origin and each
// availability entry), mixins.py (MQTT_ENTITY_COMMON_SCHEMA,
// MQTT_ENTITY_DEVICE_INFO_SCHEMA: identifiers or connections required;
// MQTT_ORIGIN_INFO_SCHEMA: name required; MQTT_AVAILABILITY_SCHEMA:
// availability_topic and availability exclusive), config.py (MQTT_BASE_SCHEMA,
// MQTT_RO_SCHEMA: state_topic required), sensor.py, binary_sensor.py
// (payload_on "ON", payload_off "OFF") and button.py (command_topic
// required), const.py (birth and will topic homeassistant/status,
// online/offline), util.py (valid topics), and core.py (entity ids).
// Discovery drops keys it does not know (vol.REMOVE_EXTRA). Two keys came
// later: the sensor's options, only with device class enum and neither a
// unit nor a state class (pull request 123248, Home Assistant 2024.9), and
// default_entity_id, "<domain>.<object id>", which replaced object_id
// (pull request 151775, 2025.10; object_id removed by 164460, 2026.4).

// abbreviations are those of ABBREVIATIONS this add-on uses; every
// abbreviated key it sends must be here.
var abbreviations = map[string]string{
	"avty": "availability", "avty_mode": "availability_mode", "avty_t": "availability_topic",
	"cmd_t": "command_topic", "dev": "device", "dev_cla": "device_class", "ent_cat": "entity_category",
	"ic": "icon", "json_attr_t": "json_attributes_topic", "name": "name", "o": "origin", "ops": "options",
	"pl_avail": "payload_available", "pl_not_avail": "payload_not_available", "pl_off": "payload_off",
	"pl_on": "payload_on", "pl_prs": "payload_press", "stat_cla": "state_class", "stat_t": "state_topic",
	"uniq_id": "unique_id", "unit_of_meas": "unit_of_measurement", "val_tpl": "value_template",
}

var deviceAbbreviations = map[string]string{
	"cns": "connections", "cu": "configuration_url", "ids": "identifiers", "name": "name", "mf": "manufacturer",
	"mdl": "model", "hw": "hw_version", "sw": "sw_version", "sa": "suggested_area", "sn": "serial_number",
}

var originAbbreviations = map[string]string{"name": "name", "sw": "sw_version", "url": "support_url"}

// Keys per schema (full names).
var (
	commonKeys = []string{"availability", "availability_mode", "availability_template", "availability_topic",
		"payload_available", "payload_not_available", "device", "origin", "enabled_by_default", "entity_category",
		"icon", "json_attributes_topic", "json_attributes_template", "object_id", "unique_id", "qos", "encoding",
		"default_entity_id"}
	roKeys     = []string{"state_topic", "value_template"}
	deviceKeys = []string{"identifiers", "connections", "manufacturer", "model", "name", "hw_version",
		"serial_number", "sw_version", "via_device", "suggested_area", "configuration_url"}
	originKeys = []string{"name", "sw_version", "support_url"}
)

var platforms = map[string]struct {
	keys     []string
	required []string
}{
	"sensor": {keys: append(slices.Clone(roKeys), "device_class", "expire_after", "force_update", "last_reset_value_template",
		"name", "suggested_display_precision", "state_class", "unit_of_measurement", "options"), required: []string{"state_topic"}},
	"binary_sensor": {keys: append(slices.Clone(roKeys), "device_class", "expire_after", "force_update", "name", "off_delay",
		"payload_off", "payload_on"), required: []string{"state_topic"}},
	"button": {keys: []string{"command_template", "command_topic", "device_class", "name", "payload_press", "retain"},
		required: []string{"command_topic"}},
}

var topicMatcher = regexp.MustCompile(`^homeassistant/(\w+)/(?:([a-zA-Z0-9_-]+)/)?([a-zA-Z0-9_-]+)/config$`)

// validTopic is util.valid_topic plus no wildcards: these are topics to
// publish on and to subscribe to exactly.
func validTopic(t string) bool {
	if t == "" || len(t) > 65535 || !utf8.ValidString(t) || strings.ContainsAny(t, "+#") {
		return false
	}
	for _, r := range t {
		if r <= 0x1f || (r >= 0x7f && r <= 0x9f) || (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return false
		}
	}
	return true
}

// validObjectID is core.py's _OBJECT_ID: lower case letters, digits and
// "_", neither first nor last.
func validObjectID(s string) bool {
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '_' {
			return false
		}
	}
	return true
}

func expand(t *testing.T, m map[string]any, table map[string]string, what string) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range m {
		full, ok := table[k]
		if !ok {
			// A full name is kept as it is.
			full = k
			require.NotContains(t, table, k)
		}
		require.NotContains(t, out, full, "%s: %s given twice", what, full)
		out[full] = v
	}
	return out
}

// hand-built status of a 2-node ffsplit cluster where both hold the vote,
// and of clusters whose names read alike.
func twoNodeStatus(names ...string) *engine.Status {
	st := &engine.Status{Clients: 2 * len(names)}
	for _, name := range names {
		cs := engine.ClusterStatus{Name: name, Algorithm: wire.AlgoFFSplit, KAP: true,
			TieBreaker: wire.TieBreaker{Mode: wire.TieBreakerLowest}, State: engine.StateHealthy,
			StateReason: "all 2 nodes connected, in one partition, holding the vote",
			Decision:    engine.Decision{Made: true, Winners: []uint32{1, 2}, Reason: "has a majority: 2 of 2 configured nodes"}}
		for _, id := range []uint32{1, 2} {
			cs.Nodes = append(cs.Nodes, engine.NodeStatus{NodeID: id, Algorithm: wire.AlgoFFSplit,
				ConfigNodes:  []wire.NodeInfo{{NodeID: 1}, {NodeID: 2}},
				LastSentVote: wire.VoteACK, LastSentAckNack: wire.VoteACK})
		}
		st.Clusters = append(st.Clusters, cs)
	}
	return st
}

func publisherFor(st *engine.Status) *MQTTPublisher {
	p := NewMQTT(Config{Instance: "a0d7b954-qnetd", Log: zerolog.Nop(),
		CertExpiry: func(string) (time.Time, bool) { return time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC), true }}, Broker{})
	p.tr.update(st, time.Now())
	return p
}

// TestDiscoveryPayloadsMatchHomeAssistantSchema checks every discovery
// config of a 2-node cluster and of the add-on against the schema above,
// entity by entity.
func TestDiscoveryPayloadsMatchHomeAssistantSchema(t *testing.T) {
	p := publisherFor(twoNodeStatus("pve"))
	want := p.desired(2)
	key := Key("pve")
	tests := []struct {
		topic       string
		component   string
		entityID    string
		deviceClass string
		// field is the state JSON's field the value template reads;
		// values, when set, are every value it may take.
		field  string
		values []string
	}{
		{"homeassistant/sensor/qnetd_" + key + "/state/config", "sensor", "sensor.qnetd_" + key + "_state", "enum", "state", States()},
		{"homeassistant/binary_sensor/qnetd_" + key + "/vote/config", "binary_sensor", "binary_sensor.qnetd_" + key + "_vote", "", "vote", []string{"ON", "OFF"}},
		{"homeassistant/sensor/qnetd_" + key + "/nodes/config", "sensor", "sensor.qnetd_" + key + "_nodes", "", "nodes_connected", nil},
		{"homeassistant/sensor/qnetd_" + key + "/decision/config", "sensor", "sensor.qnetd_" + key + "_decision", "", "decision", nil},
		{"homeassistant/sensor/qnetd_" + key + "/cert_expiry/config", "sensor", "sensor.qnetd_" + key + "_cert_expiry", "timestamp", "cert_expiry", nil},
		{"homeassistant/binary_sensor/qnetd_" + key + "/node_1_vote/config", "binary_sensor", "binary_sensor.qnetd_" + key + "_node_1_vote", "", "votes['1']", []string{"ON", "OFF"}},
		{"homeassistant/binary_sensor/qnetd_" + key + "/node_2_vote/config", "binary_sensor", "binary_sensor.qnetd_" + key + "_node_2_vote", "", "votes['2']", []string{"ON", "OFF"}},
		{"homeassistant/button/qnetd_" + key + "/forget/config", "button", "button.qnetd_" + key + "_forget", "", "", nil},
		{"homeassistant/sensor/qnetd_a0d7b954-qnetd/clusters/config", "sensor", "sensor.qnetd_clusters", "", "clusters", nil},
		{"homeassistant/sensor/qnetd_a0d7b954-qnetd/clients/config", "sensor", "sensor.qnetd_clients", "", "clients", nil},
	}
	configs := 0
	for topic := range want {
		if strings.HasSuffix(topic, "/config") {
			configs++
		}
	}
	require.Equal(t, len(tests), configs, "one row per published config")
	uniq := map[string]bool{}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.topic, "homeassistant/"), func(t *testing.T) {
			payload, ok := want[tc.topic]
			require.True(t, ok, "published")
			m := topicMatcher.FindStringSubmatch(tc.topic)
			require.NotNil(t, m, "discovery topic matches TOPIC_MATCHER")
			require.Equal(t, tc.component, m[1])
			var raw map[string]any
			require.NoError(t, json.Unmarshal([]byte(payload), &raw))
			cfg := expand(t, raw, abbreviations, "config")

			plat := platforms[tc.component]
			for k := range cfg {
				require.True(t, slices.Contains(commonKeys, k) || slices.Contains(plat.keys, k), "%s is a %s key", k, tc.component)
			}
			for _, k := range plat.required {
				require.NotEmpty(t, cfg[k], "required %s", k)
			}
			require.NotContains(t, cfg, "object_id", "gone since 2026.4: default_entity_id instead")

			// Names and ids.
			require.NotEmpty(t, cfg["name"])
			uid := cfg["unique_id"].(string)
			require.False(t, uniq[uid], "unique id %s used once", uid)
			uniq[uid] = true
			require.Equal(t, tc.entityID, cfg["default_entity_id"])
			domain, object, _ := strings.Cut(tc.entityID, ".")
			require.Equal(t, tc.component, domain)
			require.True(t, validObjectID(object), "entity id %s", tc.entityID)
			require.LessOrEqual(t, len(tc.entityID), 255)

			// Availability: one topic, the add-on's, with the default payloads.
			require.Equal(t, "qnetd/a0d7b954-qnetd/availability", cfg["availability_topic"])
			require.NotContains(t, cfg, "availability", "availability_topic and availability are exclusive")
			require.NotContains(t, cfg, "payload_available", "default online")

			// Device and origin.
			dev := expand(t, cfg["device"].(map[string]any), deviceAbbreviations, "device")
			for k := range dev {
				require.Contains(t, deviceKeys, k)
			}
			require.NotEmpty(t, dev["identifiers"], "a device needs identifiers or connections")
			for _, id := range dev["identifiers"].([]any) {
				require.IsType(t, "", id)
			}
			origin := expand(t, cfg["origin"].(map[string]any), originAbbreviations, "origin")
			for k := range origin {
				require.Contains(t, originKeys, k)
			}
			require.NotEmpty(t, origin["name"])

			// Topics.
			for _, k := range []string{"state_topic", "command_topic", "availability_topic", "json_attributes_topic"} {
				if v, ok := cfg[k]; ok {
					require.True(t, validTopic(v.(string)), "%s %q", k, v)
				}
			}

			// The state the template reads.
			if tc.field != "" {
				require.Equal(t, "{{ value_json."+tc.field+" }}", cfg["value_template"])
				stateJSON, ok := want[cfg["state_topic"].(string)]
				require.True(t, ok, "state published on %s", cfg["state_topic"])
				var doc map[string]any
				require.NoError(t, json.Unmarshal([]byte(stateJSON), &doc))
				v := lookup(doc, tc.field)
				require.NotNil(t, v, "state has %s", tc.field)
				if tc.values != nil {
					require.Contains(t, tc.values, v)
				}
			}

			// Per platform rules.
			if dc, ok := cfg["device_class"]; ok || tc.deviceClass != "" {
				require.Equal(t, tc.deviceClass, dc)
			}
			if ec, ok := cfg["entity_category"]; ok {
				require.Contains(t, []string{"config", "diagnostic"}, ec)
			}
			if ops, ok := cfg["options"]; ok {
				require.Equal(t, "enum", cfg["device_class"], "options only with device class enum")
				require.NotEmpty(t, ops)
				require.NotContains(t, cfg, "unit_of_measurement")
				require.NotContains(t, cfg, "state_class")
				var got []string
				for _, o := range ops.([]any) {
					got = append(got, o.(string))
				}
				require.Equal(t, tc.values, got)
			}
			if tc.deviceClass == "timestamp" {
				var doc Doc
				require.NoError(t, json.Unmarshal([]byte(want[cfg["state_topic"].(string)]), &doc))
				ts, err := time.Parse(time.RFC3339, doc.CertExpiry)
				require.NoError(t, err, "ISO 8601 with a time zone")
				require.Equal(t, 2126, ts.Year())
			}
			if tc.component == "binary_sensor" {
				require.NotContains(t, cfg, "payload_on", "the state JSON uses the defaults ON and OFF")
				require.NotContains(t, cfg, "payload_off")
			}
		})
	}
}

// lookup reads "a" or "a['b']" from a decoded JSON object.
func lookup(doc map[string]any, field string) any {
	name, sub, ok := strings.Cut(field, "['")
	v := doc[name]
	if !ok {
		return v
	}
	m, _ := v.(map[string]any)
	return m[strings.TrimSuffix(sub, "']")]
}

// TestIDsNeverCollide gives clusters whose names read alike (and names a
// plaintext client may send: empty, control bytes, invalid UTF-8, 255
// bytes) entities of their own: no topic, unique id or entity id is
// shared, and each is valid.
func TestIDsNeverCollide(t *testing.T) {
	long := strings.Repeat("a", 255)
	names := []string{"pve", "pve_", "PVE", "pve ", "p.ve", "p-ve", "pve\n", "", "\x00", "\xff\xfe", "_", "Ünïcode",
		long, long[:254] + "b", "homeassistant/#", "a+b"}
	st := twoNodeStatus(names...)
	p := publisherFor(st)
	p.tr.max = len(names)
	p.tr.update(st, time.Now())
	want := p.desired(0)
	topics := map[string]string{}
	ids := map[string]string{}
	for topic, payload := range want {
		require.True(t, validTopic(topic), "topic %q", topic)
		if !strings.HasSuffix(topic, "/config") {
			continue
		}
		require.Regexp(t, topicMatcher, topic)
		var cfg map[string]any
		require.NoError(t, json.Unmarshal([]byte(payload), &cfg))
		for _, k := range []string{"uniq_id", "default_entity_id", "stat_t", "cmd_t"} {
			v, _ := cfg[k].(string)
			if v == "" {
				continue
			}
			if k == "default_entity_id" {
				_, object, _ := strings.Cut(v, ".")
				require.True(t, validObjectID(object), "entity id %q", v)
			}
			if k == "stat_t" || k == "cmd_t" {
				require.True(t, validTopic(v), "%q", v)
				continue
			}
			require.NotContains(t, ids, v, "%s %q of %s also used by %s", k, v, topic, ids[v])
			ids[v] = topic
		}
		topics[topic] = payload
	}
	// Every cluster has its 8 entities; the add-on its 2.
	require.Len(t, topics, len(names)*8+2)
	keys := map[string]string{}
	for _, n := range names {
		k := Key(n)
		require.NotContains(t, keys, k, "%q and %q", n, keys[k])
		keys[k] = n
	}
	require.Equal(t, "pve_168a3276", Key("pve"), "keys are stable across releases")
}
