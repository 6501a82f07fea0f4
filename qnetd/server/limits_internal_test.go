package server

import (
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSourceOf(t *testing.T) {
	src := func(s string) string {
		ap := netip.MustParseAddrPort(s)
		return sourceOf(net.TCPAddrFromAddrPort(ap)).String()
	}
	require.Equal(t, "192.0.2.5/32", src("192.0.2.5:40312"))
	require.Equal(t, "192.0.2.5/32", src("[::ffff:192.0.2.5]:40312"), "IPv4 on a dual-stack socket")
	require.Equal(t, "2001:db8:1:2::/64", src("[2001:db8:1:2::5]:1"))
	require.Equal(t, "2001:db8:1:2::/64", src("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1"), "one /64 is one source")
	require.Equal(t, "2001:db8:1:3::/64", src("[2001:db8:1:3::5]:1"))
	require.Equal(t, "fe80::/64", src("[fe80::1%eth0]:1"))
	require.False(t, sourceOf(&net.UnixAddr{Name: "x"}).IsValid())
}

func TestComputeLimits(t *testing.T) {
	d := DefaultConfig()
	for _, tc := range []struct {
		name    string
		cfg     func(*Config)
		fdLimit uint64
		want    limits
	}{
		{"upstream's 1024", nil, 1024, limits{maxConns: 896, maxNew: 448, maxPerSource: 32}},
		{"raised", nil, 1 << 20, limits{maxConns: 1<<20 - 128, maxNew: 4096, maxPerSource: 32}},
		{"infinity", nil, math.MaxUint64, limits{maxConns: math.MaxInt32 - 128, maxNew: 4096, maxPerSource: 32}},
		{"below the reserve", nil, 100, limits{maxConns: 1, maxNew: 1, maxPerSource: 32}},
		{"no caps", func(c *Config) { c.MaxNewcomers, c.MaxNewcomersPerSource = 0, 0 }, 20000,
			limits{maxConns: 19872, maxNew: 9936, maxPerSource: 0}},
		{"no reserve", func(c *Config) { c.FDReserve = 0 }, 1000, limits{maxConns: 1000, maxNew: 500, maxPerSource: 32}},
	} {
		cfg := d
		if tc.cfg != nil {
			tc.cfg(&cfg)
		}
		require.Equal(t, tc.want, computeLimits(&cfg, tc.fdLimit), tc.name)
	}
}

// TestNewcomersAgainstAModel checks the per-source levels against a
// plain count of every source's connections over random admissions,
// INITs and closes.
func TestNewcomersAgainstAModel(t *testing.T) {
	for _, caps := range []limits{{maxNew: 16, maxPerSource: 5}, {maxNew: 16}, {maxNew: 7, maxPerSource: 3}, {maxPerSource: 2}} {
		g := newNewcomers(caps)
		r := rand.New(rand.NewPCG(1, uint64(caps.maxNew)))
		keys := make([]netip.Prefix, 6)
		for i := range keys {
			keys[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32)
		}
		model := map[netip.Prefix][]*conn{} // oldest first
		total := func() int {
			n := 0
			for _, cs := range model {
				n += len(cs)
			}
			return n
		}
		for step := 0; step < 20000; step++ {
			if r.IntN(3) > 0 || total() == 0 {
				key := keys[r.IntN(len(keys))]
				c := &conn{}
				victim, refused := g.admit(c, key)
				have, most := len(model[key]), 0
				for _, cs := range model {
					most = max(most, len(cs))
				}
				switch {
				case caps.maxPerSource > 0 && have >= caps.maxPerSource:
					require.Equal(t, refusedPerSource, refused)
					require.Nil(t, victim)
				case caps.maxNew > 0 && total() >= caps.maxNew && most < have+2:
					require.Equal(t, refusedNewcomers, refused)
					require.Nil(t, victim)
				case caps.maxNew > 0 && total() >= caps.maxNew:
					require.Empty(t, refused)
					require.NotNil(t, victim)
					vk := netip.Prefix{}
					for k, cs := range model {
						if len(cs) > 0 && cs[0] == victim {
							vk = k
						}
					}
					require.True(t, vk.IsValid(), "the victim is the oldest of its source")
					require.Equal(t, most, len(model[vk]), "the victim's source holds the most")
					model[vk] = model[vk][1:]
					model[key] = append(model[key], c)
				default:
					require.Empty(t, refused)
					require.Nil(t, victim)
					model[key] = append(model[key], c)
				}
			} else {
				// INIT or close of a random newcomer: the same to the count.
				k := keys[r.IntN(len(keys))]
				for len(model[k]) == 0 {
					k = keys[r.IntN(len(keys))]
				}
				i := r.IntN(len(model[k]))
				g.done(model[k][i])
				g.done(model[k][i]) // idempotent
				model[k] = append(model[k][:i:i], model[k][i+1:]...)
			}
			require.Equal(t, total(), g.count())
			most := 0
			for _, cs := range model {
				most = max(most, len(cs))
			}
			require.Equal(t, most, g.top)
		}
	}
}
