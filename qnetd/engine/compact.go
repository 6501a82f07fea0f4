package engine

// Compact gives back the room that departed clients left in the engine's
// tables: Go's maps and slices keep their largest size, so after a
// reconnect storm of thousands of clients the tables would hold it until
// the daemon restarts. The server calls it once many clients have left;
// it changes nothing the engine decides or reports.
func (e *Engine) Compact() {
	clients := make(map[ClientID]*Client, len(e.clients))
	for id, c := range e.clients {
		clients[id] = c
	}
	e.clients = clients
	clusters := make(map[string]*Cluster, len(e.clusters))
	for name, c := range e.clusters {
		clusters[name] = c
	}
	e.clusters = clusters
	if cap(e.deadlines) > 2*len(e.deadlines)+64 {
		e.deadlines = append(deadlineHeap(nil), e.deadlines...)
	}
	if cap(e.order) > 2*len(e.order)+64 {
		e.order = append([]*Cluster(nil), e.order...)
	}
	if len(e.dropping) == 0 {
		e.dropping = nil
	}
}
