package main

import "github.com/wardhq/ward/actors/eventlog"

// The tenant event feeds (actors/eventlog) that edge/identity serves at
// /identity/events.
func init() { kinds = append(kinds, eventlog.Kind) }
