"""The meta-test protocol (:mod:`.protocol`) and the statistics its curves are summarised
with (:mod:`.statistics`), which the plots use too."""
