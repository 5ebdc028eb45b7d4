"""The parts of one stream's recognition, each owning its state; :mod:`rtwhisper.processor` drives them.

From the bottom up: :mod:`.transcript` (event numbering and the final cover), :mod:`.intake`
(audio in, resampled, framed for voice activity), :mod:`.language` (which language the next window
is decoded in), :mod:`.utterance` (where speech stopped, and whether an utterance has ended),
:mod:`.planner` (which window is due, as an engine request) and :mod:`.commit` (a hypothesis
into final and partial words).
"""
