"""Running a comparison: its plan (`plan`: steps and what each reads), what a step reads of the run (`context`:
`RunContext`), preparing the run once (`prepare`), the stages of a step (`stages`), and the `Engine` that runs the
stages in order (`engine`)."""
