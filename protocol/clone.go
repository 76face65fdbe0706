package protocol

import "google.golang.org/protobuf/proto"

// CloneOIDCClient returns a deep copy of c, for actor code, which may not
// import the protobuf runtime itself.
func CloneOIDCClient(c *OIDCClient) *OIDCClient { return proto.Clone(c).(*OIDCClient) }
