"""Knowledge for the long tail: which domain words the model is likely not to know, and three ways to give it more.

- `longtail`: the long-tail words of a domain or task (`dontstop mine --long_tail`): rare in general text relative
  to the domain, split into many pieces, hard for the model (masked-LM loss of the whole word), one score.
- `sources`, `terms`, `expand`, `visibility`: definitions (a glossary) and facts (triples) appended to the examples
  that hold their terms, visible only to their term (`dontstop pretrain/finetune --glossary --triples`).
- `ngram_adapter`: T-DNA's n-gram adapter (`dontstop pretrain --ngram_adapter --ngrams words.tsv`).
"""
