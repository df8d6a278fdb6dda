"""A model-free sync reference: audio-visual events whose times physics fixes.

The release of a bilabial closure (/p b m/: the lips pressed together, then parting) makes an
acoustic onset at the moment the lips part: a plosive burst, or the vowel after a nasal murmur.
`avsync.truth.lips` finds the releases in the lip landmarks (with a sub-frame time),
`avsync.truth.acoustic` the onsets in the audio (1 ms steps), `avsync.truth.events` pairs them
(with gates against wrong pairings) and `avsync.truth.estimate` turns the pairs' lags into a
robust offset, its interval and a verdict. Nothing here is learned from sync labels: the only
trained component is dlib's landmark detector, upstream in `avsync.features`.
`avsync.truth.validate` measures the reference on the clips whose datasets keep them in sync.
"""
