"""The DVC stages. Each ``run(params)`` reads its inputs, calls pure functions from the
package and writes its outputs atomically; :mod:`knnlab.cli` dispatches to them."""
