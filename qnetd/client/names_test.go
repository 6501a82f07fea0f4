package client

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVoteNames pins the words a node's vote is shown with; a value
// outside the enum, which no node holds, shows as stringer writes it.
func TestVoteNames(t *testing.T) {
	for v, want := range map[Vote]string{NoVote: "-", Ack: "ACK", Nack: "NACK", Vote(3): "Vote(3)"} {
		require.Equal(t, want, v.String())
	}
}
