"""Model wrappers: each loads one model family from a local folder, a hub id or a bundled
package, and runs a batch. Operators hold configuration and call these; tests swap in
tiny local models through the same code path."""
